"""The data behind the support and manager dashboards (Voila, :mod:`extensions.dashboards`).

One module, one job:

- :mod:`.cache`: one Slurm call per refresh for every viewer and both dashboards (a file
  cache under ``AIFACTORY_HOME/cache/dashboards`` with a lock: Voila runs one kernel per
  viewer, so an in-process cache would be paid once per viewer);
- :mod:`.daterange`: a manager's date range, checked, with a message for bad input;
- :mod:`.history`: finished and running jobs from ``sacct`` (a time window, only the fields
  needed, read incrementally);
- :mod:`.live`: sessions, waiting jobs and nodes now (``squeue``/``sinfo`` through the same
  cache, in plain words via :mod:`workbench.waits`);
- :mod:`.aggregate`: GPU-hours per programme and project, burn-down, utilisation per partition,
  queue waits, the reserved share (pure functions over a jobs table);
- :mod:`.joboutput`: the bounded, path-checked tail of a job's output;
- :mod:`.source`: the settings (traitlets) and the one object both dashboards read from.
"""
