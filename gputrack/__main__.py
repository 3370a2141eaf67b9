from gputrack.cli import main

raise SystemExit(main())
