# meta-testcore packages with testpkg; its Python packages do not exist there.
inherit testpkg
RDEPENDS:${PN} = ""
