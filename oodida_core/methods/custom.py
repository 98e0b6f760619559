"""`custom`: the user's deployed module, run in the sandbox (on the clients or in the cloud),
not here. Its entries let the spec check and the schema treat it like any other method."""

from __future__ import annotations

from oodida_core.methods.base import ANALYTIC_MODES, ANY, OffboardMethod, OnboardMethod

__all__ = ["OFFBOARD", "ONBOARD"]

ONBOARD = OnboardMethod(
    "custom",
    "custom_code(x) of the module deployed to the client (deploy_onboard)",
    ANY,
    modes=ANALYTIC_MODES,
    elsewhere="'custom' is not a built-in method: deploy a module with custom_code(x) and the "
    "client runs that instead",
)
OFFBOARD = OffboardMethod(
    "custom",
    "the module deployed to the cloud (deploy_offboard)",
    (ANY,),
    elsewhere="offboard 'custom' is not a built-in method: it runs the user's deployed off-board "
    "module, not aggregate()",
)
