from tcpwatchd.cli import main

raise SystemExit(main())
