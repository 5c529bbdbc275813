"""python -m hiper.studies.credit [--quick] [--out runs/credit]"""
from hiper.studies.credit.cli import main

raise SystemExit(main())
