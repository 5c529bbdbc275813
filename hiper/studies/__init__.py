"""Controlled studies of HiPER's estimators.

    credit      bias and variance of HAE's and the flat baselines' policy-gradient estimates
                against the exact gradient of a synthetic hierarchical task, and learning
                curves (`hiper.studies.credit`, `hiper bench credit`)
    variance    the spread of each estimator's policy gradient across real rollout batches
                (`hiper.studies.variance`, `hiper bench variance`)
"""
