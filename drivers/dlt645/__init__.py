"""DL/T 645-2007 driver (Chinese electricity meters on RS-485), read-only. Importing this
package imports no pyserial: the config models are in `config`, the driver in `driver`."""

from drivers.dlt645.config import Dlt645Device, Dlt645Point

__all__ = ["Dlt645Device", "Dlt645Point"]
