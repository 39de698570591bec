"""One home for hyperparameter range checks: the loss constructors and the example config check
apply the same rules and give the same one-line message."""

import inspect
import math

import pytest
from omegaconf import OmegaConf
from script_loader import example_config
from test_combo_loss import make_loss as make_combo_loss
from test_leq_loss import make_parts

from torchrl_leq.modules import make_deterministic_actor, make_qvalue_network
from torchrl_leq.objectives import COMBOLoss, LEQLoss
from torchrl_leq.objectives.hyperparameters import (
    POSITIVE_INT,
    UNIT,
    ConfigError,
    check_hyperparameters,
    number,
)
from torchrl_leq.objectives.pretrain import FQELoss
from torchrl_leq.training.checks import check_config


def _leq(**kwargs):
    env, actor, critic = make_parts()
    return LEQLoss(actor, critic, env, **kwargs)


def _fqe(**kwargs):
    return FQELoss(make_deterministic_actor(3, 2, num_cells=(8,)),
                   make_qvalue_network(3, 2, num_cells=(8,)), **kwargs)


BAD_VALUES = [
    (_leq, LEQLoss, "tau", 1.0),
    (_leq, LEQLoss, "actor_tau", 0.0),
    (_leq, LEQLoss, "beta", 2.0),
    (_leq, LEQLoss, "horizon", 0),
    (_leq, LEQLoss, "horizon", True),
    (_leq, LEQLoss, "lmbda", float("nan")),
    (_leq, LEQLoss, "ema_weight", -1.0),
    (_leq, LEQLoss, "actor_gradient", "jacobian"),
    (_leq, LEQLoss, "include_current", "yes"),
    (make_combo_loss, COMBOLoss, "beta", -0.5),
    (make_combo_loss, COMBOLoss, "real_ratio", 1.5),
    (make_combo_loss, COMBOLoss, "num_random", 2.5),
    (make_combo_loss, COMBOLoss, "alpha_init", 0.0),
    (_fqe, FQELoss, "gamma", 1.5),
    (_fqe, FQELoss, "ema_weight", -0.1),
]


@pytest.mark.parametrize("build, cls, name, value", BAD_VALUES)
def test_constructor_and_config_check_give_the_same_message(build, cls, name, value):
    with pytest.raises(ConfigError) as from_constructor:
        build(**{name: value})
    with pytest.raises(ConfigError) as from_config:
        check_config(OmegaConf.create({"loss": {name: value}}), cls.hyperparameter_rules)
    assert str(from_config.value) == str(from_constructor.value).replace(name, "loss." + name)
    assert "\n" not in str(from_config.value)


@pytest.mark.parametrize("cls", [LEQLoss, COMBOLoss, FQELoss])
def test_every_rule_names_a_constructor_argument(cls):
    arguments = set(inspect.signature(cls.__init__).parameters)
    assert set(cls.hyperparameter_rules) <= arguments


def test_beta_is_checked_per_loss_in_the_example_configs():
    """LEQ's β mixes two critic losses (Eq. 7, in [0, 1]); COMBO's β is a penalty weight (>= 0):
    the same key, two rules, each from its loss class."""
    leq = example_config("leq_pointmaze", "loss.beta=2.0")
    with pytest.raises(ConfigError, match=r"loss\.beta must lie in \[0\.0, 1\.0\], got 2\.0"):
        check_config(leq, LEQLoss.hyperparameter_rules)
    combo = example_config("combo", "loss.beta=2.0")
    check_hyperparameters(COMBOLoss.hyperparameter_rules, "loss.", **combo.loss)
    for name in ("leq_pointmaze", "combo"):  # the shipped values pass their loss's rules
        cls = LEQLoss if name.startswith("leq") else COMBOLoss
        check_hyperparameters(cls.hyperparameter_rules, "loss.", **example_config(name).loss)


def test_number_rule_types_and_bounds():
    UNIT("x", 1)  # an int is a number
    for bad in (True, "0.5", float("inf"), -math.ulp(0.0), 1.0 + 1e-12):
        with pytest.raises(ConfigError, match="^x must"):
            UNIT("x", bad)
    with pytest.raises(ConfigError, match="x must be an integer, got 1.0"):
        POSITIVE_INT("x", 1.0)
    number(float, 0.0, nullable=True)("x", None)
    with pytest.raises(ConfigError, match="x must be a number, got None"):
        number(float, 0.0)("x", None)
