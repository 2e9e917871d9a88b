"""Example third-party trademl plug-ins: one of each family, registered by entry points.

* model kind ``example_ridge`` (:mod:`trademl_example.model`),
* indicator ``range_mean`` (:mod:`trademl_example.indicators`),
* source ``example_folder:<dir>`` (:mod:`trademl_example.source`),
* store ``examplemem://<name>`` (:mod:`trademl_example.store`),
* strategy ``example_threshold`` (:mod:`trademl_example.strategy`).
"""
