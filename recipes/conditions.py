"""Data conditions of the paper's model suite (SPEC section 4)."""
from megatron_alignpt.study.config import ConditionSpec


def headline_conditions() -> list[ConditionSpec]:
    """The four headline models: natural, filtered, and end-to-end upsampling in each direction."""
    return [
        ConditionSpec("unfiltered"),
        ConditionSpec("filtered", base="filtered"),
        ConditionSpec("misalign_upsampled", synthetic="misaligned"),
        ConditionSpec("align_upsampled", synthetic="aligned"),
    ]


def insertion_conditions() -> list[ConditionSpec]:
    """Late insertion on the unfiltered base (the paper's Mid and CPT models). Their pretraining (and,
    for CPT, midtraining) is the unfiltered model's, so a study trains it once and branches off."""
    return [
        ConditionSpec(f"{direction[:-2]}_{stage}", synthetic=direction, insertion=stage)
        for direction in ("aligned", "misaligned") for stage in ("mid", "cpt")
    ]


def filtered_upsampled_conditions() -> list[ConditionSpec]:
    """Filtered base plus end-to-end upsampling (the capability table's Filt+Align row)."""
    return [ConditionSpec("filtered_align", base="filtered", synthetic="aligned"),
            ConditionSpec("filtered_misalign", base="filtered", synthetic="misaligned")]


def paper_suite_conditions() -> list[ConditionSpec]:
    """Every condition with a published number (SPEC section 2): 10 of the paper's 11 models; the
    eleventh is not identified in what was published."""
    return headline_conditions() + filtered_upsampled_conditions() + insertion_conditions()
