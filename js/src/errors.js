// The errors apps see, as in the Python runtime (vae_export_runtime/errors.py): a
// VAEExportError is something the user can fix (a bad file, a failed run); a RuntimeInputError
// is an argument or input that does not match the graph's contract, its message naming the
// rule in the same words as Python's.

export class VAEExportError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "VAEExportError";
  }
}

export class RuntimeInputError extends VAEExportError {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "RuntimeInputError";
  }
}
