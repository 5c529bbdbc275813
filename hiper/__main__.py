from hiper.cli import main

raise SystemExit(main())
