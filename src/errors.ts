/**
 * An error the user can fix (bad option, missing or corrupt file). The CLI prints its message as one
 * line on stderr, without a stack trace, and exits non-zero.
 */
export class UserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UserError';
  }
}

/** `--some-option` for an option's camelCase key, as user errors name it. */
export function flagName(key: string): string {
  return '--' + key.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
}
