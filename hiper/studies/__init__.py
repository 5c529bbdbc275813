"""Controlled studies of HiPER's estimators on synthetic tasks whose answers are known exactly.

    credit      bias and variance of HAE and the flat baselines' policy-gradient estimates
                against the exact gradient, and learning curves (`hiper.studies.credit`)
"""
