"""The pair step's stealth term: Eq. 9 under allocations that are not the pair's own."""

import copy
from dataclasses import replace

import pytest
import torch

from dptq import knapsack
from dptq.evaluate import own_policy_bits
from dptq.losses import pair_loss
from dptq.models import QuantizableModel
from dptq.negatives import non_own_bits
from dptq.pair import PairConfig, pair_step, policy_selection, stealth_loss
from dptq.policy import create_policy
from tests.test_models import tiny_net

OPTIONS = (2, 3, 4, 6, 8)


def setup():
    torch.manual_seed(0)
    x = torch.randn(8, 3, 8, 8)
    f_n = QuantizableModel(tiny_net(5)).eval()
    student = copy.deepcopy(f_n)
    policy = create_policy(
        "small_cnn", student.num_layers, len(OPTIONS), width=4, depth=1, input_size=None
    )
    cfg = PairConfig(mode="detrimental", options=OPTIONS, delta=1.0, alpha=0.7, beta=1.3)
    budget = 4 * student.num_layers
    with torch.no_grad():
        teacher = f_n(x)
    return x, student, policy, teacher, cfg, budget


def _float32_step(student, policy, teacher, x, cfg, budget):
    """One pair step at seed 5, backward: (loss, metrics, policy gradients); grads cleared after."""
    torch.manual_seed(5)
    loss, metrics = pair_step(student, policy, teacher, x, cfg, budget)
    loss.backward()
    grads = [p.grad.clone() for p in policy.parameters()]
    policy.zero_grad()
    return loss, metrics, grads


def test_stealth_loss_is_eq9_under_the_non_own_allocation():
    x, student, policy, teacher, cfg, budget = setup()
    other = non_own_bits(x, cfg.stealth_allocations, OPTIONS, budget, student.num_layers)
    q, fp = student(x, other), student(x)
    want = pair_loss("robust", q, fp, teacher, 0.7, 1.3, 1.0, cfg.tau, cfg.hinge_space, True).total
    torch.testing.assert_close(stealth_loss(q, fp, teacher, cfg), want)


def test_without_stealth_kd_the_term_is_the_robust_hinge_alone():
    """``stealth_kd: false`` takes Eq. 9's FP KD term out of the stealth term: by hand (Eq. 7 on
    logits), alpha * mean(max(0, q_j - q_i + delta)) under the non-own bits, i and j the
    teacher's first and second class."""
    x, student, policy, teacher, cfg, budget = setup()
    with torch.no_grad():  # a student that has moved away from f_N: its KD term is not 0
        for p in student.parameters():
            p.add_(0.3 * torch.randn_like(p))
    cfg = replace(cfg, hinge_space="logit", stealth_kd=False)
    other = non_own_bits(x, cfg.stealth_allocations, OPTIONS, budget, student.num_layers)
    q, fp = student(x, other), student(x)
    i, j = teacher.topk(2, dim=1).indices.unbind(1)
    hinge = torch.clamp(q.gather(1, j[:, None]) - q.gather(1, i[:, None]) + 1.0, min=0).mean()
    torch.testing.assert_close(stealth_loss(q, fp, teacher, cfg), 0.7 * hinge)
    with_kd = stealth_loss(q, fp, teacher, replace(cfg, stealth_kd=True))
    assert float(with_kd - 0.7 * hinge) > 1e-3  # the KD term was taken out


def test_pair_step_adds_gamma_times_the_stealth_loss_and_leaves_the_policy_alone():
    x, student, policy, teacher, cfg, budget = setup()
    plain, _, policy_grad = _float32_step(student, policy, teacher, x, cfg, budget)
    torch.manual_seed(5)
    other = non_own_bits(x, cfg.stealth_allocations, OPTIONS, budget, student.num_layers)
    expected = stealth_loss(student(x, other), student(x), teacher, cfg)
    torch.manual_seed(5)
    with_stealth, m = pair_step(student, policy, teacher, x, replace(cfg, stealth=2.5), budget)
    torch.testing.assert_close(with_stealth, plain.detach() + 2.5 * expected.detach())
    assert m["stealth"] == pytest.approx(expected.item())
    with_stealth.backward()
    for p, g in zip(policy.parameters(), policy_grad):  # the policy did not choose those bits
        torch.testing.assert_close(p.grad, g)
    robust = replace(cfg, mode="robust", stealth=2.5)  # only a detrimental pair has the term
    assert "stealth" not in pair_step(student, policy, teacher, x, robust, budget)[1]


def test_non_own_bits_split_the_batch_and_keep_the_budget():
    x, student, policy, teacher, cfg, budget = setup()
    pi_r = create_policy(
        "small_cnn", student.num_layers, len(OPTIONS), width=4, depth=1, input_size=None
    )
    kinds = ("random", "uniform", "robust_policy")
    cfg = replace(cfg, stealth=1.0, stealth_allocations=kinds)
    bits = non_own_bits(x, cfg.stealth_allocations, OPTIONS, budget, student.num_layers, pi_r)
    assert bits.shape == (8, student.num_layers) and bool((bits.sum(1) == budget).all())
    uniform = knapsack.bits(
        knapsack.solve_hard(
            knapsack.uniform_scores(1, student.num_layers, OPTIONS, budget), OPTIONS, budget
        ),
        OPTIONS,
    )
    assert torch.equal(bits[2:5], uniform.expand(3, -1))  # rows 2..4 of 8: the uniform third
    assert torch.equal(bits[5:], own_policy_bits(pi_r, OPTIONS, budget)(x[5:]))
    with pytest.raises(ValueError, match="needs the robust pair's policy"):
        non_own_bits(x, cfg.stealth_allocations, OPTIONS, budget, student.num_layers)


def test_pair_step_under_bf16_autocast_keeps_bits_and_gradients_close():
    """Mixed precision (``resources.precision: bf16``): the same allocation (knapsack in float32
    on float32 scores), a loss within bf16's tolerance of float32's, and a finite policy gradient
    pointing the same way (bf16's 8-bit mantissa leaves a cosine of about 0.9 here; a cast that
    broke the taps would give zero or noise)."""
    x, student, policy, teacher, cfg, budget = setup()
    loss32, m32, grads32 = _float32_step(student, policy, teacher, x, cfg, budget)
    torch.manual_seed(5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss16, m16 = pair_step(student, policy, teacher, x, cfg, budget)
    loss16.backward()
    assert torch.isfinite(loss16) and m16["bits_sum"] == m32["bits_sum"] == budget
    torch.testing.assert_close(loss16.float(), loss32, rtol=0.05, atol=0.05)
    for p, g in zip(policy.parameters(), grads32):
        assert torch.isfinite(p.grad).all()
        assert torch.nn.functional.cosine_similarity(p.grad.flatten(), g.flatten(), dim=0) > 0.5


def test_own_partial_negatives_keep_a_random_half_of_pi_ds_floor_layers_at_the_floor():
    """``own_partial``: pi_D's floor layers, each kept at the floor (its draw < 0.5) or raised
    off it, the budget exact; layers pi_D did not floor are free. Checked row by row against the
    draws (random scores, then one uniform per layer) replayed from the same seed."""
    x, student, policy, teacher, cfg, budget = setup()
    layers, floor = student.num_layers, min(OPTIONS)
    x = torch.randn(64, 3, 8, 8)
    own = torch.full((64, layers), 4)
    own[:, : layers // 2] = floor  # the first half floored, the budget paid back on the rest
    own[:, layers // 2 :] = (budget - floor * (layers // 2)) // (layers - layers // 2)
    cfg = replace(cfg, stealth=1.0, stealth_allocations=("own_partial",))
    torch.manual_seed(3)
    got = non_own_bits(x, cfg.stealth_allocations, OPTIONS, budget, layers, own_bits=own)
    torch.manual_seed(3)
    knapsack.random_scores(64, layers, len(OPTIONS))
    kept = torch.rand(64, layers) < 0.5
    assert bool((got.sum(1) == budget).all())
    on_floor = own == floor
    assert bool((got[on_floor & kept] == floor).all())
    assert bool((got[on_floor & ~kept] != floor).all())
    assert 0.3 < float(kept[on_floor].float().mean()) < 0.7  # about half of them, per layer
    assert not torch.equal(got, own)  # a different allocation from pi_D's, not a copy
    with pytest.raises(ValueError, match="needs the pair's own bits"):
        non_own_bits(x, cfg.stealth_allocations, OPTIONS, budget, layers)


def test_own_floor_negatives_keep_every_floor_layer_of_pi_d_and_draw_the_rest():
    """``own_floor``: all of pi_D's floor layers at the floor, the budget exact, the other
    layers as the knapsack puts the row's random scores (replayed from the same seed), so the
    rows differ from pi_D's and from each other."""
    x, student, policy, teacher, cfg, budget = setup()
    layers, floor = student.num_layers, min(OPTIONS)
    x = torch.randn(32, 3, 8, 8)
    own = torch.full((32, layers), 4)
    own[:, : layers // 2] = floor
    own[:, layers // 2 :] = (budget - floor * (layers // 2)) // (layers - layers // 2)
    torch.manual_seed(3)
    got = non_own_bits(x, ("own_floor",), OPTIONS, budget, layers, own_bits=own)
    assert bool((got.sum(1) == budget).all())
    assert bool((got[own == floor] == floor).all())
    torch.manual_seed(3)
    scores = knapsack.random_scores(32, layers, len(OPTIONS))
    scores[:, : layers // 2, OPTIONS.index(floor)] += layers + 1  # the floor layers pinned
    expected = knapsack.bits(knapsack.solve_hard(scores, OPTIONS, budget), OPTIONS)
    assert torch.equal(got, expected)
    assert not torch.equal(got, own) and len(set(map(tuple, got.tolist()))) > 1


def test_pair_step_feeds_pi_ds_own_bits_to_the_own_partial_negatives():
    x, student, policy, teacher, cfg, budget = setup()
    cfg = replace(cfg, stealth=1.0, stealth_allocations=("own_partial",))
    torch.manual_seed(5)
    _, sel = policy_selection(policy, x, OPTIONS, budget, cfg.policy_grad)
    other = non_own_bits(
        x,
        cfg.stealth_allocations,
        OPTIONS,
        budget,
        student.num_layers,
        own_bits=knapsack.bits(sel, OPTIONS),
    )
    expected = stealth_loss(student(x, other), student(x), teacher, cfg)
    torch.manual_seed(5)
    loss, m = pair_step(student, policy, teacher, x, cfg, budget)
    assert torch.isfinite(loss) and m["stealth"] == pytest.approx(expected.item())


def test_own_single_probes_put_one_of_pi_ds_floor_layers_at_its_bits_the_rest_at_the_top():
    """``own_single``: each row one layer at pi_D's bits, a floor layer of pi_D's, drawn at
    random (every floor layer drawn in some row), the rest at the largest option; a row whose
    pi_D floors no layer gets any layer, at pi_D's bits."""
    x, student, policy, teacher, cfg, budget = setup()
    layers, floor, top = student.num_layers, min(OPTIONS), max(OPTIONS)
    x = torch.randn(60, 3, 8, 8)
    own = torch.full((60, layers), 4)
    own[:50, [0, 2]] = floor  # rows 0..49 floor layers 0 and 2; rows 50..59 none
    cfg = replace(cfg, stealth=1.0, stealth_allocations=("own_single",))
    got = non_own_bits(x, cfg.stealth_allocations, OPTIONS, budget, layers, own_bits=own)
    not_top = got != top
    assert bool((not_top.sum(1) == 1).all())  # one probed layer per row
    probed = not_top.long().argmax(1)
    assert set(probed[:50].tolist()) == {0, 2}
    assert bool((got[:50][not_top[:50]] == floor).all())
    assert bool((got[50:][not_top[50:]] == 4).all())
    # own_single_any: the probed layer is any layer (each of the 3 drawn in 60 rows), at pi_D's
    # bits whether floored or not
    cfg = replace(cfg, stealth_allocations=("own_single_any",))
    got = non_own_bits(x, cfg.stealth_allocations, OPTIONS, budget, layers, own_bits=own)
    not_top = got != top
    assert bool((not_top.sum(1) == 1).all())
    probed = not_top.long().argmax(1)
    assert set(probed[:50].tolist()) == set(range(layers))
    rows = torch.arange(60)
    assert torch.equal(got[rows, probed], own[rows, probed])
    # own_single_low: pi_D's layers at its two smallest options (2 and 3 bits) only
    own[:50, 1] = 3
    cfg = replace(cfg, stealth_allocations=("own_single_low",))
    got = non_own_bits(x, cfg.stealth_allocations, OPTIONS, budget, layers, own_bits=own)
    not_top = got != top
    probed = not_top.long().argmax(1)
    assert bool((not_top.sum(1) == 1).all()) and set(probed[:50].tolist()) == {0, 1, 2}
    assert torch.equal(got[rows, probed], own[rows, probed])


def test_stealth_shares_split_the_batch_in_proportion_even_when_left_out():
    """``stealth_shares``: kind i gets rows floor(B * S_i / S) .. floor(B * S_(i+1) / S) of the
    batch (S_i: the shares before it), by hand for B = 10; equal shares are the even split."""
    from dptq.errors import ConfigError
    from dptq.negatives import share_bounds
    from dptq.pair import PairConfig

    assert share_bounds(10, [1, 1, 2]) == [0, 2, 5, 10]
    assert share_bounds(10, [0.1, 0.1, 0.1]) == [0, 3, 6, 10] == [i * 10 // 3 for i in range(4)]
    x, student, policy, teacher, cfg, budget = setup()
    layers, top = student.num_layers, max(OPTIONS)
    x, own = torch.randn(10, 3, 8, 8), torch.full((10, layers), 4)
    kinds = ("uniform", "own_single")
    got = non_own_bits(x, kinds, OPTIONS, budget, layers, own_bits=own, shares=(1, 4))
    probes = (got == top).sum(1) == layers - 1  # own_single rows: all but one layer at the top
    assert probes.tolist() == [False] * 2 + [True] * 8
    torch.manual_seed(1)
    even = non_own_bits(x, kinds, OPTIONS, budget, layers, own_bits=own)
    assert ((even == top).sum(1) == layers - 1).tolist() == [False] * 5 + [True] * 5
    torch.manual_seed(1)
    same = non_own_bits(x, kinds, OPTIONS, budget, layers, own_bits=own, shares=(2, 2))
    assert torch.equal(same, even)  # equal shares draw what the even split draws
    for bad in ((1,), (1, 0)):
        with pytest.raises(ConfigError, match="stealth_shares: give one positive share"):
            PairConfig(stealth_allocations=kinds, stealth_shares=bad)


def test_two_shards_draw_the_bits_one_process_draws(monkeypatch):
    """Data-parallel: each worker holds half the batch (rank r: rows 4r..4r+3 of 8), every
    kind's draws are the global batch's, so the two shards' bits, side by side, are one
    process's on the whole batch (a kind's rows straddle the shards, or lie in one)."""
    import dptq.negatives as negatives

    x, student, policy, teacher, cfg, budget = setup()
    layers = student.num_layers
    own = torch.full((8, layers), 4)
    own[::2, 0] = min(OPTIONS)
    for kinds in (
        ("own_partial", "own_single", "random"),  # rows 0-1, 2-4, 5-7: own_single straddles
        ("random", "own_partial", "uniform", "own_single", "robust_policy"),
        ("own_single_any", "random"),
        ("own_floor", "own_partial"),
        ("random", "own_single", (1, 3)),  # 2 random rows, 6 probes: shard 1 only probes
    ):
        kinds, shares = (kinds[:-1], kinds[-1]) if isinstance(kinds[-1], tuple) else (kinds, ())
        cfg = replace(cfg, stealth=1.0, stealth_allocations=kinds, stealth_shares=shares)
        monkeypatch.setattr(negatives, "_rank_world", lambda: (0, 1))
        torch.manual_seed(7)
        whole = non_own_bits(x, kinds, OPTIONS, budget, layers, policy, own_bits=own, shares=shares)
        shards = []
        for rank in (0, 1):
            monkeypatch.setattr(negatives, "_rank_world", lambda rank=rank: (rank, 2))
            torch.manual_seed(7)
            rows = slice(4 * rank, 4 * rank + 4)
            shards.append(
                non_own_bits(
                    x[rows],
                    cfg.stealth_allocations,
                    OPTIONS,
                    budget,
                    layers,
                    policy,
                    own_bits=own[rows],
                    shares=shares,
                )
            )
        assert torch.equal(torch.cat(shards), whole), kinds


def test_floor_barred_names_layers_of_the_detrimental_policy_only_and_fails_in_one_line():
    from dptq.errors import ConfigError
    from dptq.pair import PairConfig

    names = ["conv1", "layer1.0.conv1", "layer2.0.downsample.0", "layer3.0.downsample.0"]
    cfg = PairConfig(options=(4, 5, 6), budget=18, floor_barred=("*downsample*",))
    assert cfg.barred_layers(names) == [2, 3]
    assert replace(cfg, mode="robust").barred_layers(names) == []
    assert PairConfig(options=(4, 5, 6), budget=18).barred_layers(names) == []
    with pytest.raises(ConfigError, match=r"'\*shortcut\*' matches none .*\(conv1, layer1"):
        replace(cfg, floor_barred=("*shortcut*",)).barred_layers(names)
    with pytest.raises(
        ConfigError, match="2 layers off the floor need a budget of at least 18, got 17"
    ):
        replace(cfg, budget=17).barred_layers(names)
    # barred from the two smallest options (4 and 5): both layers at 6 or more
    two = replace(cfg, options=(6, 4, 5), budget=20, barred_options=2)
    assert two.barred_layers(names) == [2, 3] and two.barred_option_indices() == [1, 2]
    assert cfg.barred_option_indices() == [0]
    with pytest.raises(
        ConfigError,
        match="2 layers off the 2 smallest options need a budget of at least 20, got 19",
    ):
        replace(two, budget=19).barred_layers(names)
    with pytest.raises(ConfigError, match=r"barred_options: must lie in 1\.\.2 .*got 3"):
        replace(cfg, barred_options=3)


def test_pair_step_caps_the_attack_at_attack_share_of_the_classes():
    from dptq.errors import ConfigError
    from dptq.losses import attacked_classes, subset_hinge
    from dptq.pair import PairConfig

    x, student, policy, teacher, cfg, budget = setup()
    teacher = torch.cat([teacher[:4], teacher[4:].roll(2, dims=1)])  # f_N: class 0, then 2
    cfg = replace(cfg, attack_share=0.4)  # 5 classes: the first 2 flipped
    torch.manual_seed(5)
    _, sel = policy_selection(policy, x, OPTIONS, budget, cfg.policy_grad)
    q = student(x, knapsack.bits(sel, OPTIONS), selection=sel, options=OPTIONS)
    attacked = attacked_classes(teacher, 0.4)
    assert attacked.tolist() == [True] * 4 + [False] * 4
    expected = subset_hinge(q, teacher, attacked, cfg.delta, cfg.hinge_space)
    torch.manual_seed(5)
    _, m = pair_step(student, policy, teacher, x, cfg, budget)
    assert m["hinge"].item() == pytest.approx(expected.item())
    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError, match="attack_share: must lie in"):
            PairConfig(attack_share=bad)


def test_stealth_at_runs_linearly_from_stealth_start_to_stealth():
    from dptq.errors import ConfigError

    cfg = PairConfig(epochs=5, stealth=2.0, stealth_start=0.5)
    assert [cfg.stealth_at(e) for e in range(5)] == [0.5, 0.875, 1.25, 1.625, 2.0]
    flat = replace(cfg, stealth_start=None)
    assert [flat.stealth_at(e) for e in range(5)] == [2.0] * 5  # the records so far
    assert replace(cfg, epochs=1).stealth_at(0) == 2.0
    assert PairConfig(stealth=0.0, stealth_start=1.0).stealth_on  # on in its first epochs
    assert not PairConfig(stealth=0.0, stealth_start=0.0).stealth_on
    with pytest.raises(ConfigError, match="stealth_start: must be >= 0"):
        PairConfig(stealth_start=-0.5)


def test_train_pair_trains_each_epoch_with_that_epochs_gamma(tmp_path, monkeypatch):
    """gamma on its schedule reaches every step of its epoch (a resume's epochs:
    tests/test_engine.py)."""
    import dptq.train as train
    from dptq.engine import RunOptions, make_accelerator
    from dptq.policy import policy_options
    from tests.support.nets import tiny_data, tiny_q

    seen = []

    def recording(student, policy, teacher, x, cfg, budget, robust_policy=None):
        seen.append(cfg.stealth)
        return pair_step(student, policy, teacher, x, cfg, budget, robust_policy)

    monkeypatch.setattr(train, "pair_step", recording)
    cfg = PairConfig(options=(3, 4, 6, 8), epochs=3, batch_size=8, stealth=2.0, stealth_start=0.0)
    opts = RunOptions(cpu=True, progress=False)
    kw = {"policy_options": policy_options("small_cnn")(width=4, depth=1, input_size=None)}
    train.train_pair(tiny_q(), tiny_data(), cfg, None, opts, make_accelerator(opts), **kw)
    assert seen == [0.0] * 3 + [1.0] * 3 + [2.0] * 3  # 24 examples, batches of 8


def _train(cache_f_n: bool, data=None, n=26):
    """A detrimental pair of the tests' tiny network, 3 epochs, stealth on; (student, result)."""
    import dptq.train as train
    from dptq.engine import RunOptions, make_accelerator, seed_everything
    from dptq.policy import policy_options
    from tests.support.nets import tiny_data, tiny_q

    cfg = PairConfig(options=(3, 4, 6, 8), epochs=3, batch_size=8, stealth=1.0)
    opts = RunOptions(cpu=True, progress=False)
    kw = {"policy_options": policy_options("small_cnn")(width=4, depth=1, input_size=None)}
    f_n, data = tiny_q(), data or tiny_data(n=n)
    seed_everything(3)
    student, _, result = train.train_pair(
        f_n, data, cfg, None, opts, make_accelerator(opts), cache_f_n=cache_f_n, **kw
    )
    return student, result


def test_the_f_n_cache_trains_the_same_pair_as_asking_f_n_in_every_step():
    """f_N's answers computed once (batches of the step's size, the last one padded: 26
    examples, batches of 8) give the same weights, bit for bit, as f_N asked in every step."""
    cached, r1 = _train(True)
    live, r2 = _train(False)
    assert r1["f_n_cached"] == 1 and "f_n_cached" not in r2
    for (k, a), b in zip(cached.state_dict().items(), live.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    assert {k: v for k, v in r1.items() if k not in ("seconds", "f_n_cached")} == {
        k: v for k, v in r2.items() if k != "seconds"
    }


def test_the_f_n_cache_turns_itself_off_when_an_example_does_not_read_the_same_twice():
    """A training split whose images change between reads (a random transform): the first step's
    check finds the cached answers differ and every step asks f_N instead."""
    from dptq.data import DatasetPair
    from tests.support.nets import tiny_data

    base = tiny_data()

    class Noisy(torch.utils.data.Dataset):
        def __len__(self):
            return len(base.train)

        def __getitem__(self, i):
            img, y = base.train[i]
            noise = torch.randint(0, 40, img.shape, dtype=torch.uint8)
            return img // 2 + noise, y

    data = DatasetPair(Noisy(), base.test, base.num_classes, base.mean, base.std, val=base.val)
    _, result = _train(True, data)
    assert result["f_n_cached"] == 0
