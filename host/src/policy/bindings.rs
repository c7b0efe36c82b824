//! The only `bindgen!` call: Rust types and traits generated from `wit/policy.wit`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "policy-plugin",
    additional_derives: [PartialEq],
});
