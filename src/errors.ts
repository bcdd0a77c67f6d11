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
