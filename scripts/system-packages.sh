# The Debian/Ubuntu packages scripts/bootstrap.sh installs, one list per need. Sourced by
# the bootstrap and read by tests/test_bootstrap.py, which proves with
# `apt-cache depends --recurse --no-recommends` that each list reaches the package owning
# the files the platform runs (the bootstrap installs with --no-install-recommends, which
# follows Depends only).
#
# PostGIS: `postgis` alone is the command-line tools; the server extension
# (lib/postgis-3.so, extension/postgis*.sql) ships in postgresql-<major>-postgis-3 and its
# -scripts package, which `postgresql-postgis` depends on for the distribution's default
# major (the same one `postgresql` brings).
POSTGIS_PACKAGES="postgresql postgresql-contrib postgresql-postgis"
NODE_PACKAGES="nodejs npm"
CHROMIUM_PACKAGES="chromium"
# fontconfig: its fc-list is how the bootstrap tells whether a CJK font is there
CJK_FONT_PACKAGES="fonts-wqy-microhei fontconfig"
# the map labels' font the platform serves (gisplatform/config.py label_font): one
# TrueType file with Chinese and Latin
LABEL_FONT_PACKAGES="fonts-droid-fallback"
LABEL_FONT=/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf
# WMS / WFS (gisplatform/services): MapServer 8's `mapserv` FastCGI binary, which the
# platform runs itself; mapserver-bin's Depends bring libmapserver2 with PostGIS and GDAL
MAPSERVER_PACKAGES="mapserver-bin"
MAPSERV=/usr/bin/mapserv
# the tests only (`make test`): QGIS opens /qgis/project.qgz headless. Debian's
# python3-qgis binds the system Python (/usr/bin/python3), which the tests run it with
QGIS_PACKAGES="python3-qgis"
