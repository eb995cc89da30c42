/**
 * The hello-world JSON app of `deno task bench --scenario app,app500,appclose`: run by Vento (APP) and,
 * as the baseline, by `deno serve` itself, so the bench compares what each server adds around the same
 * `fetch` handler.
 */

export default {
  fetch(_request: Request): Response {
    return Response.json({ hello: "world" });
  },
};
