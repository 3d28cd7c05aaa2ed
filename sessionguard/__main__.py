from sessionguard.cli import main

raise SystemExit(main())
