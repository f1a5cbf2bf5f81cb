"""Training and evaluation data: the aligned-crop cache and its batch samplers, synthetic damage
(``ffv degrade``), and pairs with real video damage.
"""
