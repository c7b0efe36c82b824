// Starts fauxqs, the in-memory SQS server masq's tests, demo and benchmarks use, on loopback
// only: fauxqs itself always binds 0.0.0.0, which would expose a test queue to the network.
import net from "node:net";

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (args[0] && typeof args[0] === "object") {
    args[0] = { ...args[0], host: process.env.MASQ_SQS_BIND ?? "127.0.0.1" };
  }
  return listen.apply(this, args);
};

const { startFauxqs } = await import("fauxqs");
await startFauxqs({ logger: process.env.FAUXQS_LOGGER === "true" });
