//! The only `bindgen!` call: Rust types and traits generated from `wit/policy.wit`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "policy-plugin",
    additional_derives: [PartialEq],
    // `seal` traps where there is no key to seal with. A policy importing it is refused at
    // load in that case, so the trap only backs that check up.
    imports: { "masq:policy/seal.seal": trappable },
});
