"""The soak's leak measure: a steady climb of the RSS floor counts in full,
one or two allocator steps and single high readings do not."""

from .soak import floor_growth


def test_a_steady_leak_counts_its_whole_climb():
    samples = [30_000 + 100 * second for second in range(60)]  # +100 KiB every second

    assert 5_000 <= floor_growth(samples) <= 6_000


def test_a_leak_hidden_under_allocation_spikes_still_counts():
    samples = [30_000 + 100 * second + (8_192 if second % 3 == 0 else 0) for second in range(60)]

    assert 5_000 <= floor_growth(samples) <= 6_000


def test_one_step_of_the_allocator_is_not_a_leak():
    samples = [28_000] * 20 + [31_500] * 40

    assert floor_growth(samples) == 0


def test_two_steps_of_the_allocator_are_not_a_leak():
    samples = [27_500] * 10 + [29_000] * 20 + [31_500] * 30

    assert floor_growth(samples) == 0


def test_a_flat_run_has_no_growth():
    assert floor_growth([31_000, 39_000, 31_000, 31_100, 31_000, 38_000, 31_050, 31_000]) == 0


def test_too_few_samples_give_no_growth_rather_than_an_error():
    assert floor_growth([31_000]) == 0
    assert floor_growth([31_000, 32_000]) == 1_000
