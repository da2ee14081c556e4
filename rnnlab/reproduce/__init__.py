"""Reproductions of published results: entries as data, a runner, and the results table.

``rnnlab reproduce NAME`` trains an entry's runs with the ordinary trainer into run
directories; :mod:`rnnlab.reproduce.table` builds the README table from them.
"""
