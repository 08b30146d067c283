"""Which writers logged a tag's steps, and whether two of them wrote at once.

Every step header carries its AttentionWriter's writer_id (a new one per
writer, so per process). A tag written by one process after another (a run
resumed from a checkpoint) is fine; two writers logging to one tag at the
same time (two processes, two ranks) is not: TensorBoard's default loader
keeps about half the steps of such a run (26 of 50 measured, and says
nothing) and the sequence numbers of the two interleave. Both load() and
the plugin's steps route warn when the wall-time spans of two writers'
steps overlap.
"""


def concurrent_writers(steps):
    """steps: (writer_id, wall_time) of some steps of one tag. The writer ids
    whose steps' wall-time spans overlap another writer's, sorted ([] if none)."""
    spans = {}
    for writer_id, wall_time in steps:
        lo, hi = spans.get(writer_id, (wall_time, wall_time))
        spans[writer_id] = (min(lo, wall_time), max(hi, wall_time))
    overlapping, reach, owner = set(), None, None
    for writer_id, (lo, hi) in sorted(spans.items(), key=lambda item: item[1]):
        if reach is not None and lo <= reach:  # starts before an earlier writer's last step
            overlapping.update((writer_id, owner))
        if reach is None or hi > reach:
            reach, owner = hi, writer_id
    return sorted(overlapping)


def warning(run, tag, writer_ids):
    return ("tag %r of run %r was logged by %d writers at once (writer ids %s): their steps "
            "interleave, and TensorBoard's default loader keeps only some of them; give each "
            "process its own run directory" % (tag, run, len(writer_ids),
                                               ", ".join(w[:8] for w in writer_ids)))
