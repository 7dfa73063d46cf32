"""``engine study``: the paper's Section 4 workflow as one plan of jobs (docs/study.md).

``spec`` reads and validates a study file once; ``plan`` turns it into stages (runs,
calibrations, comparisons) with hashed inputs; ``jobs`` executes one stage in a process;
``executor`` runs the plan serially or as Ray tasks; ``report`` writes ``report.md``.
"""
