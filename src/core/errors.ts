/**
 * One way to turn anything thrown into the text of a log line or an error answer: an `Error`'s message,
 * or the thrown value as a string. Never throws.
 *
 * Pure: never mentions `Deno.`.
 */

/** The message of `e` when it is an `Error`, else `String(e)`. */
export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
