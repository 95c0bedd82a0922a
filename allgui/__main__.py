from allgui.cli.main import main

raise SystemExit(main())
