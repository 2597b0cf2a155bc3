import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Tests start real Python workers; two cores do not profit from more parallel files.
    maxWorkers: 2,
    minWorkers: 1,
  },
});
