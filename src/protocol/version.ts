/** Wire protocol version; must equal PROTOCOL_VERSION in py/fpdiff/protocol.py. */
export const PROTOCOL_VERSION = 1;
