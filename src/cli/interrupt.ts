/**
 * Ctrl-C for long commands: the first press aborts politely (the worker cancels the op, and a
 * training op writes its meta checkpoint first); a second press exits at once.
 */
export async function withInterrupt<T>(fn: (signal: AbortSignal) => Promise<T>, onFirst?: () => void): Promise<T> {
  const controller = new AbortController();
  let presses = 0;
  const handler = () => {
    presses += 1;
    if (presses === 1) {
      onFirst?.();
      process.stderr.write("\nInterrupted: stopping cleanly (a meta checkpoint is written). Press Ctrl-C again to exit at once.\n");
      controller.abort();
    } else {
      process.stderr.write("\nExiting without waiting.\n");
      process.exit(130);
    }
  };
  process.on("SIGINT", handler);
  process.on("SIGTERM", handler);
  try {
    return await fn(controller.signal);
  } finally {
    process.off("SIGINT", handler);
    process.off("SIGTERM", handler);
  }
}
