"""The errors the library raises for the command-line edge to report in one line (a leaf module).

Bad input is a `UserError` (exit status 2): each module's own kind is a subclass, so the edge
(`cli_utils.one_line_errors`) catches them all by one type. A fault of the machine is an
`EnvironmentFault` (exit 1), a diverged run a `NonFiniteError` (exit 3), Ctrl-C after the
in-flight checkpoint landed an `Interrupted` (exit 130). This module imports nothing of the
project, so any module may raise these without an import cycle.
"""

from __future__ import annotations

import errno
import os
import re


class UserError(Exception):
  """Bad input (a config value, a file, a path): one line naming it and what is accepted."""


class DataError(UserError, ValueError):
  """A dataset, data directory or data setting that cannot be used."""


class GenotypeError(UserError, ValueError):
  """A malformed genotype, arch string or α file; the message names the bad part."""


class SpaceError(UserError, ValueError):
  """A search-space or base-method setting, or a benchmark table, that cannot work."""


class CheckpointError(UserError, RuntimeError):
  """A checkpoint or workdir that cannot be used; the message says why and what to do."""


class EnvironmentFault(Exception):
  """A fault of the machine, not of the input (a read-only directory): one line, exit status 1."""


class NonFiniteError(RuntimeError):
  """A NaN or Inf in a run's metrics or state: the run stops before saving it (exit status 3)."""


class Interrupted(Exception):
  """Ctrl-C during a run, after the in-flight checkpoint landed: one line, exit status 130."""


# A write that fails for one of these is the machine's fault (exit 1), not a bug.
ENVIRONMENT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES)


# TensorStore (under orbax) reports a failed write as a ValueError whose text ends with the
# system's error code: "... No space left on device [os_error_code='28']".
_OS_ERROR_CODE = re.compile(r"os_error_code='?(\d+)")


def machine_write_fault(error: BaseException | None, filename: str | None = None
                        ) -> OSError | None:
  """The `OSError` a failed write stands for when it is one of `ENVIRONMENT_ERRNOS` — the error
  itself, or an orbax/TensorStore error (or its cause) carrying the system's code — else None."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno in ENVIRONMENT_ERRNOS:
      return error
    match = _OS_ERROR_CODE.search(str(error))
    if match and int(match.group(1)) in ENVIRONMENT_ERRNOS:
      code = int(match.group(1))
      return OSError(code, os.strerror(code), filename)
    error = error.__cause__ or error.__context__
  return None
