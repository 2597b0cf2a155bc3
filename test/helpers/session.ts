// One CPU worker session shared by the tests of a file.
import { afterAll, beforeAll } from "vitest";
import { Session } from "../../src/index.js";

/**
 * Opens a CPU session before the file's first test and closes it after the last; call at the top
 * level of a test file, and the returned function gives the session inside the tests.
 */
export function sharedSession(): () => Session {
  let session: Session | undefined;
  beforeAll(async () => {
    session = await Session.open({ device: "cpu" });
  });
  afterAll(async () => {
    await session?.close();
  });
  return () => {
    if (!session) throw new Error("the shared session is open only while the file's tests run");
    return session;
  };
}
