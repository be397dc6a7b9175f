/**
 * The protocol version every message carries in `protocol_version`.
 *
 * Rules (docs/protocol.md): adding an optional field keeps the version; removing a field,
 * changing a field's meaning or making an optional field required bumps it. A receiver
 * refuses a message whose version it does not know with `UNSUPPORTED_PROTOCOL_VERSION`.
 */
export const PROTOCOL_VERSION = 1 as const;

/** Versions this build understands. */
export const SUPPORTED_PROTOCOL_VERSIONS: readonly number[] = [1];
