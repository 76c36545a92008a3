"""Reading a PACS for the acquisition check: what was scanned, how, and on which device.

``synthetic`` makes obviously fake DICOM studies for the tests and the demo.
"""
