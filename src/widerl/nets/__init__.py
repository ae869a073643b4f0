"""Networks: connectivity bodies, actor/critic heads, state features."""
