"""The operating-system jail custom code runs in: a fork server in bubblewrap's namespaces,
and per call a fresh process confined by rlimits, Landlock, seccomp and an audit hook. See
``layers`` for the table of layers and levels, ``oodida_core.customcode.sandbox`` for the parent's side."""

from oodida_core.customcode.jail.layers import LAYERS, LEVELS, Capabilities, JailSettings, level_of, probe

__all__ = ["LAYERS", "LEVELS", "Capabilities", "JailSettings", "level_of", "probe"]
