"""Derive: from what the run kept, the facts the report shows, each a small frozen result:
first derivatives, names and rows, notes, the chain rule step by step, the graph, a model's
gradient flow, calculus checks and symbolic derivatives. Built after the cell, for what is shown."""
