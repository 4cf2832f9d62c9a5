from adaptlab.cli import main

raise SystemExit(main())
