/**
 * An error the user can fix (bad option, missing or corrupt file). The CLI prints its message as one
 * line on stderr, without a stack trace, and exits 2.
 */
export class UserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UserError';
  }
}

/**
 * A bad value of one run option, named by its configuration field (`warmupSteps`); the command line
 * names it by its flag (`--warmup`) when it prints the error.
 */
export class OptionError extends UserError {
  constructor(
    readonly option: string,
    readonly detail: string,
  ) {
    super(`${option} ${detail}`);
    this.name = 'OptionError';
  }
}

/** A checkpoint (or safetensors file) that is missing, unreadable, corrupt, or does not match its own model. */
export class CheckpointError extends UserError {
  constructor(message: string) {
    super(message);
    this.name = 'CheckpointError';
  }
}

/** A model this diffuse cannot run: written by a newer diffuse, or of an unknown kind. */
export class UnsupportedModelError extends UserError {
  constructor(message: string) {
    super(message);
    this.name = 'UnsupportedModelError';
  }
}
