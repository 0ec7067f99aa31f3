"""What a key may learn from an answer, by scope: the rules that keep verify and identify from becoming a
distance oracle (issue 23). The operator ('scores') sees distances, thresholds, ranks and 404s; everyone else
sees decisions at the model's threshold, a band only for matches, and identify candidates that match.

Why: exact distances rebuild a template bit by bit (33 requests for 32 bits); ranks among enrolled reference
codes do too (about 100 requests for 32 bits); ranks alone let image probes climb towards a target; a band
under the threshold grades how close a guess came; a 404 tells which subject ids exist.
"""
from __future__ import annotations

from biohash.serve.access import ApiKey
from biohash.serve.deployment import Decision, Deployment, NotFound, RequestError


def operator(key: ApiKey) -> bool:
    """The 'scores' scope is the operator's: exact distances, thresholds, ranks below the threshold, 404s."""
    return "scores" in key.scopes


def need_threshold(dep: Deployment, mode: str, key: ApiKey) -> None:
    """Without a decision threshold only an operator may match: everyone else would get bands and ranks of
    raw distances, an oracle that rebuilds templates (issue 23)."""
    if not operator(key) and dep.threshold(mode) is None:
        hint = " (bundles exported before asymmetric matching have none: export again, or serve without " \
               "--asymmetric)" if mode.endswith("-asym") else ""
        raise RequestError(f"this model has no decision threshold for {mode} at FAR {dep.far}: export it from a "
                           f"run with validation thresholds{hint} (or use a key with the 'scores' scope)")


def answer(dep: Deployment, d: Decision, key: ApiKey) -> dict:
    """A verify answer: decision and band; distance and threshold only for the operator. Without the 'scores'
    scope a non-match is always band 'low': bands below the threshold would grade how close a guess came."""
    out: dict[str, object] = {"mode": d.mode, "match": d.match, "band": dep.band(d.distance)}
    if operator(key):
        out |= {"distance": d.distance, "threshold": d.threshold}
    elif not d.match:
        out["band"] = "low"
    return out


def checked_verify(dep: Deployment, key: ApiKey, subject: str, probe: dict, against: str | None) -> Decision:
    """verify, where an unknown subject (or one without the gallery modality) reads as a plain non-match to
    anyone but the operator: a 404 would tell a `match` key which subject ids exist."""
    name = dep.mode_name(dep.mode_of(probe, against).name, probe)  # "-asym" where matched asymmetrically
    need_threshold(dep, name, key)
    try:
        return dep.verify(subject, probe, against)
    except NotFound:
        if operator(key):
            raise
        return Decision(name, float(dep.bits), dep.threshold(name), False)


def checked_identify(dep: Deployment, key: ApiKey, probe: dict, against: str | None, k: int) -> list[dict]:
    """identify, refused (need_threshold) where the model has no threshold and the key is not the operator's."""
    return checked_identify_many(dep, key, [probe], against, k)[0]


def checked_identify_many(dep: Deployment, key: ApiKey, probes: list[dict], against: str | None,
                          k: int) -> list[list[dict]]:
    """checked_identify for several probes, searched together (Deployment.identify_many)."""
    for probe in probes:
        need_threshold(dep, dep.mode_name(dep.mode_of(probe, against).name, probe), key)
    return dep.identify_many(probes, against, k)


def candidates(found: list[dict], key: ApiKey) -> list[dict]:
    """Identify's answer: the operator sees the k nearest with distances; others only the candidates that
    pass the threshold (a rank among non-matches is a distance oracle: 155 image probes climbed a target from
    rank 32 to 2)."""
    if operator(key):
        return [{k: c[k] for k in ("subject", "mode", "match", "band", "distance")} for c in found]
    return [{k: c[k] for k in ("subject", "mode", "match", "band")} for c in found if c["match"]]
