"""The fused engine's parts (used by ``rnnlab.engine.fused``).

* ``lanes``: lay a cell's plan out as lanes, (B, H) column blocks in SSA form;
* ``plan``: lay out buffers and derive one forward and one backward step as instructions;
* ``pyexec``: run the instructions as torch calls in a generated Python loop;
* ``native`` (+ ``vm_source``): run them in a C++ loop built once per machine.
"""
