/**
 * Waiting with a bound: for steps that must not keep a stopping process alive (a log flush on a hung
 * disk, a worker that does not answer).
 */

/** Resolves when `p` settles or after `ms`, whichever comes first; never rejects. */
export async function settleWithin(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([p.catch(() => {}), new Promise<void>((r) => timer = setTimeout(r, ms))]);
  clearTimeout(timer);
}
