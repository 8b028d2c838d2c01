/**
 * Process exit codes of every edged command (README, "Command line").
 *
 * @module
 */

/** Exit codes, as getopt-style tools use them, plus the launcher's restart code. */
export const EXIT = {
  /** Success (and `--help`). */
  OK: 0,
  /** The operation failed: a refused patch, a module that fails validation, a failed update. */
  FAILURE: 1,
  /** Bad command line or configuration. */
  USAGE: 2,
  /**
   * `edged update`: a release or its metadata does not verify against the
   * signed metadata (`update_verification_failed`); retrying fetches the same
   * bytes, unlike a network failure (1).
   */
  VERIFICATION_FAILED: 3,
  /**
   * Internal, only between the launcher and the edged it starts: another
   * edged holds the data directory's lock (a plain `edged run` exits 2 for
   * that). The launcher waits for the holder instead of counting a failed
   * start (EX_CANTCREAT of sysexits.h).
   */
  DATA_DIR_BUSY: 73,
  /**
   * `edged run` wants to be started again, into the other A/B slot
   * (EX_TEMPFAIL of sysexits.h; the launcher and the systemd unit restart on it).
   */
  RESTART: 75,
} as const;

/** One of {@linkcode EXIT}'s values. */
export type ExitCode = typeof EXIT[keyof typeof EXIT];
