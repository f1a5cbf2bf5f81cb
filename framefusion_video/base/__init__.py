"""What every part of ffv stands on: errors users see, output files written safely, file types,
pixel conversions, thread helpers. Imports nothing else of the package.
"""
