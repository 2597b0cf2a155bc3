// A second, raw ZeroMQ client of a worker (tests of malformed messages and of authentication).
import { readFileSync } from "node:fs";
import { Dealer } from "zeromq";
import { decode } from "../../src/protocol/codec.js";
import type { Worker } from "../../src/bridge/worker.js";

/** A DEALER connected to `worker`, with its credentials unless `auth` says otherwise. */
export function rawDealer(worker: Worker, auth: { username: string; password: string } | null = worker.credentials, receiveTimeout = 5000): Dealer {
  // sendTimeout too: a socket the worker refuses during the handshake never gets a pipe to queue on
  const sock = new Dealer({ linger: 0, receiveTimeout, sendTimeout: receiveTimeout, ...(auth ? { plainUsername: auth.username, plainPassword: auth.password } : {}) });
  sock.connect(worker.endpoint);
  return sock;
}

/** Send one message (of one or more frames) and decode the single reply. */
export async function rawRoundTrip(worker: Worker, frames: Buffer | Buffer[]): Promise<Record<string, unknown>> {
  const sock = rawDealer(worker);
  try {
    await sock.send(frames);
    const [reply] = await sock.receive();
    return decode(reply!) as Record<string, unknown>;
  } finally {
    sock.close();
  }
}

/** Peak resident memory of a process so far, in bytes (Linux's VmHWM). */
export function peakRss(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m![1]) * 1024;
}
