/**
 * Stable error codes for everything that can go wrong while reading a request, and the one table
 * that maps each code to its HTTP status.
 *
 * Codes are readable strings used alike in logs, tests, golden vectors and the admin protocol;
 * never rename one. Pure; no Deno APIs.
 */

/** Why a request was refused. See `ERROR_STATUS` for the answer each gets. */
export type ErrorCode =
  // request line
  | "INVALID_METHOD"
  | "INVALID_TARGET"
  | "INVALID_VERSION"
  | "UNSUPPORTED_VERSION"
  | "URI_TOO_LONG"
  | "INVALID_REQUEST_LINE"
  // header section
  | "INVALID_HEADER_NAME"
  | "INVALID_HEADER_VALUE"
  | "WHITESPACE_BEFORE_COLON"
  | "OBS_FOLD"
  | "BARE_CR"
  | "BARE_LF"
  | "HEADER_TOO_LARGE"
  | "TOO_MANY_HEADERS"
  | "MISSING_HOST"
  | "DUPLICATE_HOST"
  | "INVALID_HOST"
  // framing (RFC 9112 §6)
  | "INVALID_CONTENT_LENGTH"
  | "DUPLICATE_CONTENT_LENGTH"
  | "CL_WITH_TE"
  | "TE_IN_HTTP10"
  | "TE_NOT_CHUNKED_LAST"
  | "UNKNOWN_TRANSFER_CODING"
  | "INVALID_CHUNK_SIZE"
  | "CHUNK_SIZE_TOO_LONG"
  | "INVALID_CHUNK_EXTENSION"
  | "INVALID_CHUNK_DATA_END"
  | "INVALID_TRAILER"
  | "TRAILER_TOO_LARGE"
  | "BODY_TOO_LARGE"
  | "UNSUPPORTED_EXPECT"
  // connection level
  | "HEADER_TIMEOUT"
  | "BODY_TIMEOUT";

/**
 * The single code → status table. Every protocol error also closes the connection: after a framing
 * error we no longer know where the next request starts (RFC 9112 §6.3), so we never guess.
 */
export const ERROR_STATUS: Readonly<Record<ErrorCode, number>> = {
  INVALID_METHOD: 400,
  INVALID_TARGET: 400,
  INVALID_VERSION: 400,
  UNSUPPORTED_VERSION: 505,
  URI_TOO_LONG: 414,
  INVALID_REQUEST_LINE: 400,
  INVALID_HEADER_NAME: 400,
  INVALID_HEADER_VALUE: 400,
  WHITESPACE_BEFORE_COLON: 400,
  OBS_FOLD: 400,
  BARE_CR: 400,
  BARE_LF: 400,
  HEADER_TOO_LARGE: 431,
  TOO_MANY_HEADERS: 431,
  MISSING_HOST: 400,
  DUPLICATE_HOST: 400,
  INVALID_HOST: 400,
  INVALID_CONTENT_LENGTH: 400,
  DUPLICATE_CONTENT_LENGTH: 400,
  CL_WITH_TE: 400,
  TE_IN_HTTP10: 400,
  TE_NOT_CHUNKED_LAST: 400,
  UNKNOWN_TRANSFER_CODING: 501,
  INVALID_CHUNK_SIZE: 400,
  CHUNK_SIZE_TOO_LONG: 400,
  INVALID_CHUNK_EXTENSION: 400,
  INVALID_CHUNK_DATA_END: 400,
  INVALID_TRAILER: 400,
  TRAILER_TOO_LARGE: 431,
  BODY_TOO_LARGE: 413,
  UNSUPPORTED_EXPECT: 417,
  HEADER_TIMEOUT: 408,
  BODY_TIMEOUT: 408,
};

/** Status for a code (a convenience that keeps call sites short). */
export function statusOf(code: ErrorCode): number {
  return ERROR_STATUS[code];
}
