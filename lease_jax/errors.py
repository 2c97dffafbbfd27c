"""The errors the library raises for the command-line edge to report in one line (a leaf module).

Bad input is a `UserError` (exit status 2): each module's own kind is a subclass, so the edge
(`cli_utils.one_line_errors`) catches them all by one type. A fault of the machine is an
`EnvironmentFault` (exit 1), a diverged run a `NonFiniteError` (exit 3), Ctrl-C after the
in-flight checkpoint landed an `Interrupted` (exit 130). This module imports nothing of the
project, so any module may raise these without an import cycle.
"""

from __future__ import annotations

import errno


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
