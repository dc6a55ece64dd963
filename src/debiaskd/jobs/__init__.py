"""One typed job per pipeline step (:mod:`debiaskd.jobs.registry` names them by ``KIND``): what the kfp
components run through :func:`debiaskd.runtime.dispatch.execute`, and what
:func:`debiaskd.jobs.inprocess.run_inprocess` calls directly."""
