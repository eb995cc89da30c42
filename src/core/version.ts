/** Vento's version, shown by `--version`, the admin `hello` and the dashboard. */
export const VERSION = "0.1.0";
