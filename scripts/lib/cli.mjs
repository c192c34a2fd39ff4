// Command-line options of the scripts: `--name value` and bare `--flag`.

/** The value after `--name`, or `fallback` when it is absent. */
export function argument(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 && process.argv[at + 1] !== undefined ? process.argv[at + 1] : fallback;
}

/** Whether `--name` was given. */
export const flag = (name) => process.argv.includes(`--${name}`);
