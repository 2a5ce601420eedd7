"""The services other GIS software speaks: WMS, WFS and WMTS; QGIS projects."""
