"""Losses against values computed by hand with plain ``math`` (never by calling the function under test)."""

from __future__ import annotations

import math

import pytest
import torch

from debiaskd.training import losses

S = [[2.0, 0.5, -1.0], [0.1, 0.2, 1.5]]
T = [[1.0, 1.5, -0.5], [-1.0, 0.0, 2.0]]
Y = [0, 2]
BIAS = [[0.7, 0.2, 0.1], [0.3, 0.3, 0.4]]


def _softmax(row: list[float]) -> list[float]:
    m = max(row)
    e = [math.exp(v - m) for v in row]
    z = sum(e)
    return [v / z for v in e]


def _ce(row: list[float], gold: int) -> float:
    return -math.log(_softmax(row)[gold])


def _t(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def test_kd_loss_matches_hand_computation() -> None:
    alpha, temp = 0.3, 2.0
    kl = 0.0
    for s, t in zip(S, T, strict=True):
        ps, pt = _softmax([v / temp for v in s]), _softmax([v / temp for v in t])
        kl += sum(b * math.log(b / a) for a, b in zip(ps, pt, strict=True))
    kl /= len(S)  # batchmean
    ce = sum(_ce(s, y) for s, y in zip(S, Y, strict=True)) / len(S)
    expected = alpha * temp * temp * kl + (1 - alpha) * ce
    got = losses.kd_loss(_t(S), _t(T), torch.tensor(Y), alpha, temp)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_kd_loss_uses_debias_task_loss_in_place_of_ce() -> None:
    task = torch.tensor(5.0)
    pure_kd = losses.kd_loss(_t(S), _t(T), torch.tensor(Y), 1.0, 2.0)
    got = losses.kd_loss(_t(S), _t(T), torch.tensor(Y), 0.25, 2.0, task_loss=task)
    assert got.item() == pytest.approx(0.25 * pure_kd.item() + 0.75 * 5.0, rel=1e-6)


def test_poe_loss_matches_hand_computation() -> None:
    expected = 0.0
    for s, b, y in zip(S, BIAS, Y, strict=True):
        log_ps = [math.log(p) for p in _softmax(s)]
        combined = [a + math.log(c) for a, c in zip(log_ps, b, strict=True)]
        expected += _ce(combined, y)
    expected /= len(S)
    got = losses.poe_loss(_t(S), torch.tensor(Y), _t(BIAS).log())
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # the bias-aligned example (bias gives gold 0.7) gets a smaller gradient share than under ERM
    logits = _t(S).requires_grad_()
    losses.poe_loss(logits, torch.tensor(Y), _t(BIAS).log()).backward()
    assert logits.grad[0, 0].abs() < abs(_softmax(S[0])[0] - 1) / 2


def test_reweight_matches_hand_computation() -> None:
    weights = losses.reweight_weights(_t(BIAS), torch.tensor(Y))
    assert weights.tolist() == pytest.approx([1 - 0.7, 1 - 0.4])
    ces = [_ce(s, y) for s, y in zip(S, Y, strict=True)]
    expected = (0.3 * ces[0] + 0.6 * ces[1]) / (0.3 + 0.6)
    assert losses.erm_loss(_t(S), torch.tensor(Y), weights).item() == pytest.approx(expected, rel=1e-6)
    assert losses.erm_loss(_t(S), torch.tensor(Y)).item() == pytest.approx(sum(ces) / 2, rel=1e-6)


def test_conf_reg_matches_hand_computation() -> None:
    teacher = [_softmax(t) for t in T]
    expected = 0.0
    for s, t, b, y in zip(S, teacher, BIAS, Y, strict=True):
        scaled = [p ** (1 - b[y]) for p in t]
        z = sum(scaled)
        scaled = [v / z for v in scaled]
        log_ps = [math.log(p) for p in _softmax(s)]
        expected += -sum(a * c for a, c in zip(scaled, log_ps, strict=True))
    expected /= len(S)
    got = losses.conf_reg_loss(_t(S), torch.tensor(Y), _t(teacher), _t(BIAS))
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_group_dro_matches_hand_computation() -> None:
    logits = [*S, [0.0, 1.0, 0.0]]
    labels, groups = [*Y, 1], [0, 1, 1]
    q = [0.2, 0.3, 0.5]  # group 2 absent from the batch
    step = 0.1
    ces = [_ce(s, y) for s, y in zip(logits, labels, strict=True)]
    g_loss = [ces[0], (ces[1] + ces[2]) / 2, 0.0]
    new = [q[0] * math.exp(step * g_loss[0]), q[1] * math.exp(step * g_loss[1]), q[2]]
    z = sum(new)
    new = [v / z for v in new]
    expected = sum(w * g for w, g in zip(new, g_loss, strict=True))
    loss, weights = losses.group_dro_loss(_t(logits), torch.tensor(labels), torch.tensor(groups), _t(q), step)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert weights.tolist() == pytest.approx(new, rel=1e-6)
    assert weights[1] > q[1] * weights[2] / q[2]  # the worse group gained weight relative to the absent one


def test_registered_debias_objectives_compute_their_losses_and_keep_group_state() -> None:
    from debiaskd.training.objectives import implementation
    from debiaskd.training.objectives.base import Rows, Setup, Step

    y, idx = torch.tensor(Y), torch.tensor([0, 1])
    rows = Rows(bias_probs=_t(BIAS), reference_probs=_t([_softmax(t) for t in T]), group_codes=torch.tensor([0, 1]),
                n_groups=2)
    step = Step(_t(S), y, idx, {}, rows)

    def objective(name: str, **params):
        made = implementation(name)(**params)
        made.setup(Setup(torch.nn.Identity(), None, torch.device("cpu"), 0, rows, list))
        return made

    assert objective("erm").task_loss(step).item() == pytest.approx(losses.erm_loss(_t(S), y).item())
    assert objective("product_of_experts").task_loss(step).item() == pytest.approx(
        losses.poe_loss(_t(S), y, _t(BIAS).log()).item())
    assert objective("conf_reg").task_loss(step).item() == pytest.approx(
        losses.conf_reg_loss(_t(S), y, rows.reference_probs, _t(BIAS)).item())
    assert objective("reweight").task_loss(step).item() == pytest.approx(
        losses.erm_loss(_t(S), y, losses.reweight_weights(_t(BIAS), y)).item())
    dro = objective("group_dro", group_dro_step=0.5)
    before = dro.weights.clone()
    dro.task_loss(step)
    assert not torch.equal(before, dro.weights)
    assert torch.equal(dro.state()["group_weights"], dro.weights)
    with pytest.raises(KeyError, match="magic"):
        implementation("magic")


def test_hidden_and_attention_losses() -> None:
    s_hidden = [torch.ones(1, 2, 2)]  # student layer 0
    t_hidden = [torch.full((1, 2, 2), 3.0)]  # the teacher layer mapped to it
    # (1 − 3)² = 4 everywhere
    assert losses.hidden_loss(s_hidden, t_hidden).item() == pytest.approx(4.0)
    proj = torch.nn.Linear(2, 2, bias=False)
    torch.nn.init.eye_(proj.weight)
    proj.weight.data *= 3.0
    assert losses.hidden_loss(s_hidden, t_hidden, proj=proj).item() == pytest.approx(0.0)
    uniform = torch.full((1, 1, 2, 2), 0.5)
    peaked = torch.tensor([[[[0.9, 0.1], [0.9, 0.1]]]])
    assert losses.attention_loss([uniform], [uniform]).item() == pytest.approx(0.0, abs=1e-7)
    kl = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    assert losses.attention_loss([uniform], [peaked]).item() == pytest.approx(kl, rel=1e-5)
