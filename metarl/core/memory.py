"""How much memory an autograd graph holds for its backward pass.

Used to compare meta-gradient estimators without timing or allocator noise: second-order
MAML's graph grows with every inner step, a first-order estimator's does not
(tests/core/test_finite_difference.py, scripts/first_order_sinusoid.py).
"""

from __future__ import annotations

import torch


def graph_bytes(loss: torch.Tensor) -> int:
    """Bytes of the distinct tensors the autograd graph of ``loss`` saves for backward.

    Walks the graph from ``loss.grad_fn`` and sums the ``_saved_*`` tensors of every node,
    each storage view counted once (``torch.autograd.graph.saved_tensors_hooks`` would be
    the direct way, but ``torch.func.grad`` refuses to run under it).
    """
    seen_nodes: set[object] = set()
    seen: set[tuple[int, int]] = set()
    total = 0
    stack = [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen_nodes:
            continue
        seen_nodes.add(node)
        for name in dir(node):
            if not name.startswith("_saved_"):
                continue
            value = getattr(node, name)
            for t in value if isinstance(value, tuple) else (value,):
                if isinstance(t, torch.Tensor) and (t.data_ptr(), t.numel()) not in seen:
                    seen.add((t.data_ptr(), t.numel()))
                    total += t.numel() * t.element_size()
        stack.extend(next_node for next_node, _ in node.next_functions)
    return total
