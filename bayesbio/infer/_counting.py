"""The model as NUTS runs it: solver failures counted per chain and iteration (and per patient
for population models) while the compiled sampler chunk runs (used by :mod:`bayesbio.infer.nuts`)."""

from __future__ import annotations

from bayesbio._failure_report import _failure_context, _FailureContext

__all__ = ["counting_model"]


def counting_model(model, log, n_patients=None):
    """``model(data)`` whose solves count their failures while the sampler chunk runs.

    The chunk passes the chain, the iteration and ``_bb_failures``, a ``jax.Ref`` counter it
    creates for each iteration: failed solves add to it inside the compiled program, so the
    program has no host callback and JAX's persistent compilation cache can store it. Without a
    counter (vectorised chains, whose ``vmap`` of NumPyro's tree building cannot carry state
    effects) and for solves inside the model's own ``jax.vmap``, failures go to ``log`` through a
    host callback instead (:func:`bayesbio._failure_report._report_failure`). Called without ``_bb_chain``
    (initialisation, post-processing) or with ``log=None``, nothing is counted.

    With ``n_patients`` (population models), population solves over that many patients also
    count per patient, into ``_bb_patient_failures`` (a ``jax.Ref`` of ``n_patients`` counts) or
    else ``log.record_patients`` (:mod:`bayesbio._patient_failures`).
    """

    def wrapped(*args, _bb_chain=None, _bb_iteration=None, _bb_failures=None, _bb_patient_failures=None,
                **kwargs):
        if _bb_chain is None or log is None:
            return model(*args, **kwargs)
        context = _FailureContext(_bb_chain, _bb_iteration, log.record, counter=_bb_failures)
        if n_patients is not None:
            context.n_patients = n_patients
            context.patient_counter = _bb_patient_failures
            context.record_patients = log.record_patients
        token = _failure_context.set(context)
        try:
            return model(*args, **kwargs)
        finally:
            _failure_context.reset(token)

    return wrapped
