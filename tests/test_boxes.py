"""Box geometry, with answers worked out by hand."""

import pytest

from pipeline.annotations import Box
from pipeline.boxes import (
    BoxLimits, CropPlan, Rect, add_margin, aspect_ratio, box_to_rect, clip_rect, judge_box, plan_crop,
    reduction_factor,
)

KEEP_ALL = BoxLimits(min_aspect=0.0, max_aspect=1e9, min_side=0)


def test_inclusive_indices_become_half_open():
    # xmin 0 .. xmax 9 is ten pixels wide
    assert box_to_rect(Box(0, 0, 9, 4)) == Rect(0, 0, 10, 5)


def test_clip_keeps_the_inside_part():
    assert clip_rect(Rect(-5, 2, 12, 8), width=10, height=6) == Rect(0, 2, 10, 6)


def test_clip_of_a_rect_outside_is_none():
    assert clip_rect(Rect(12, 0, 20, 5), width=10, height=6) is None
    assert clip_rect(Rect(10, 0, 20, 5), width=10, height=6) is None  # touching the edge is not inside


def test_aspect_is_width_over_height():
    assert aspect_ratio(Rect(0, 0, 30, 10)) == 3.0


def test_real_box_past_the_border_is_clipped():
    # n02098105_2063: 500x375 photo, xmax 511
    rect, reason = judge_box(Box(92, 42, 511, 328), 500, 375, BoxLimits())
    assert reason is None
    assert rect == Rect(92, 42, 500, 329)


@pytest.mark.parametrize(
    "box, reason",
    [
        (Box(5, 5, 4, 8), "zero_area_box"),  # xmax < xmin
        (Box(5, 9, 8, 3), "zero_area_box"),
        (Box(20, 20, 30, 30), "box_outside_image"),
        (Box(-30, 0, -1, 5), "box_outside_image"),
    ],
)
def test_degenerate_boxes_are_rejected_with_their_reason(box, reason):
    assert judge_box(box, 10, 10, KEEP_ALL) == (None, reason)


def test_single_pixel_box_is_not_zero_area():
    rect, reason = judge_box(Box(3, 3, 3, 3), 10, 10, KEEP_ALL)
    assert reason is None and rect == Rect(3, 3, 4, 4)


def test_aspect_filter_uses_the_clipped_box():
    limits = BoxLimits(min_aspect=0.25, max_aspect=5.0)
    # 100 x 10 -> aspect 10: dropped
    assert judge_box(Box(0, 0, 99, 9), 200, 200, limits) == (None, "aspect_out_of_range")
    # 50 x 10 -> aspect 5: kept (limits are inclusive)
    assert judge_box(Box(0, 0, 49, 9), 200, 200, limits)[1] is None
    # 120 x 20 as written, but clipped by a 60-wide photo to 60 x 20 -> aspect 3: kept
    assert judge_box(Box(0, 0, 119, 19), 60, 200, limits)[1] is None
    # 10 wide x 41 high -> aspect 0.2439 < 0.25: dropped
    assert judge_box(Box(0, 0, 9, 40), 200, 200, limits) == (None, "aspect_out_of_range")


def test_min_side_filter():
    limits = BoxLimits(min_aspect=0.0, max_aspect=100.0, min_side=64)
    assert judge_box(Box(0, 0, 99, 62), 200, 200, limits) == (None, "box_too_small")  # 100 x 63
    assert judge_box(Box(0, 0, 99, 63), 200, 200, limits)[1] is None  # 100 x 64


def test_margin_grows_each_side_by_a_fraction_of_its_axis():
    # 20 wide, 40 high, margin 0.1: 2 px left and right, 4 px top and bottom
    assert add_margin(Rect(10, 20, 30, 60), 0.1) == Rect(8, 16, 32, 64)


def test_stretch_uses_the_box_as_it_is():
    plan = plan_crop(Rect(10, 20, 30, 60), 100, 100, "stretch")
    assert plan == CropPlan(canvas=Rect(10, 20, 30, 60), valid=Rect(0, 0, 100, 100))
    assert not plan.needs_padding


def test_stretch_margin_is_clipped_to_the_photo():
    plan = plan_crop(Rect(0, 0, 20, 40), 100, 100, "stretch", margin=0.5)
    assert plan.canvas == Rect(0, 0, 30, 60)


def test_expand_grows_the_short_side_around_the_centre():
    # 20 x 40 box centred at (20, 40): a 40 x 40 square from x 0 to 40
    plan = plan_crop(Rect(10, 20, 30, 60), 100, 100, "expand")
    assert plan.canvas == Rect(0, 20, 40, 60)
    assert not plan.needs_padding


def test_expand_shifts_the_square_inside_the_photo():
    # centred square would start at x = -10; shifted to 0
    assert plan_crop(Rect(0, 0, 20, 40), 100, 100, "expand").canvas == Rect(0, 0, 40, 40)
    # at the right edge: centred square 75..115 shifted to 60..100
    assert plan_crop(Rect(90, 0, 100, 40), 100, 100, "expand").canvas == Rect(60, 0, 100, 40)


def test_expand_wider_than_the_photo_is_centred_and_padded():
    # a 100 x 30 panorama: the 100-px square sticks out 35 px above and below
    plan = plan_crop(Rect(0, 0, 100, 30), 100, 30, "expand")
    assert plan.canvas == Rect(0, -35, 100, 65)
    assert plan.needs_padding


def test_pad_keeps_only_the_box_pixels_on_a_centred_square():
    plan = plan_crop(Rect(10, 20, 30, 60), 100, 100, "pad")
    assert plan.canvas == Rect(0, 20, 40, 60)
    assert plan.valid == Rect(10, 20, 30, 60)
    assert plan.needs_padding


def test_unknown_square_method_names_the_choices():
    with pytest.raises(ValueError, match="stretch, expand, pad"):
        plan_crop(Rect(0, 0, 10, 10), 10, 10, "squash")


def test_reduction_factor_is_set_by_the_smallest_crop():
    big = CropPlan(Rect(0, 0, 640, 480), Rect(0, 0, 1000, 1000))
    small = CropPlan(Rect(0, 0, 320, 400), Rect(0, 0, 1000, 1000))
    assert reduction_factor([big], 64) == 7.5  # 480 / 64
    assert reduction_factor([big, small], 64) == 5.0  # 320 / 64
    tiny = CropPlan(Rect(0, 0, 32, 32), Rect(0, 0, 1000, 1000))
    assert reduction_factor([big, tiny], 64) == 1.0  # never upsample at decode time
